//! The TLS probes against real OpenSSL: a Python HTTPS server on loopback
//! with a fresh self-signed certificate, curl asking it for a page. With the
//! probes on the libssl both map, the plaintext of both sides must arrive
//! through both pairs of functions: curl's request as it wrote it
//! (`SSL_write`) and the answer as it read it (`SSL_read`), the request as
//! the server read it (`SSL_read_ex`) and the answer as it wrote it
//! (`SSL_write_ex`), each with its process and socket. Needs root (eBPF),
//! openssl, curl and python3. (`openssl s_server -www` would not do: it
//! reads through an SSL BIO, which does not call `SSL_read`.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tap_worker::dissect::{DissectConfig, Emit, GenericFields as _};
use tap_worker::tls::streams::Streams;
use tap_worker::tls::{TlsError, TlsProbes, TlsRecord, libraries_of, socket_of};
use testkit::{Process, TempDir, free_port, require_tools};

/// A Python HTTPS server (its `ssl` module reads and writes with
/// `SSL_read_ex`/`SSL_write_ex`; curl uses `SSL_read`/`SSL_write`), with a
/// fresh self-signed certificate.
const SERVER: &str = r#"
import http.server, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * (32 << 20) if self.path == "/big" else b"hello over tls\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

fn https_server(dir: &TempDir, port: u16) -> Process {
    let (cert, key) = testkit::self_signed(dir, "localhost");
    let server = Process::spawn(
        Command::new("python3")
            .args(["-c", SERVER, &port.to_string()])
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    testkit::assert_eventually!(
        Duration::from_secs(20),
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the HTTPS server on {port}"
    );
    server
}

/// The libssl curl links (`ldd`), which may be another file than Python's.
fn curls_libssl() -> Option<std::path::PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "ldd \"$(command -v curl)\""])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("libssl.so"))
        .find_map(|l| {
            l.split("=>")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(Into::into)
        })
}

#[test]
fn openssl_plaintext_of_both_sides_arrives_with_pid_and_socket() {
    if !require_tools("eBPF TLS test", true, &["openssl", "curl", "python3"]) {
        return;
    }
    let dir = TempDir::new("tls-probes");
    let port = free_port();
    let server = https_server(&dir, port);
    let libs = libraries_of(server.id());
    assert!(!libs.is_empty(), "s_server maps no libssl");

    let mut probes = TlsProbes::load().unwrap();
    let hooked = probes.attach(&libs[0]).unwrap();
    assert_eq!(hooked, 4, "functions hooked in {}", libs[0].display());
    // Attaching the same file again changes nothing.
    assert_eq!(probes.attach(&libs[0]).unwrap(), hooked);
    if let Some(lib) = curls_libssl() {
        probes.attach(&lib).unwrap();
    }

    let curl = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "--http1.1"])
        .arg(format!("https://127.0.0.1:{port}/kubetap-tls-probe"))
        .spawn()
        .unwrap();
    let curl_pid = curl.id();
    let done = curl.wait_with_output().unwrap();
    assert!(done.status.success(), "curl");

    let mut seen: Vec<TlsRecord> = Vec::new();
    let has = |seen: &[TlsRecord], pid: u32, egress: bool, needle: &[u8]| {
        seen.iter().any(|r| {
            r.pid == pid && r.egress == egress && r.data.windows(needle.len()).any(|w| w == needle)
        })
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10)
        && !(has(
            &seen,
            curl_pid,
            true,
            b"GET /kubetap-tls-probe HTTP/1.1\r\n",
        ) && has(&seen, curl_pid, false, b"hello over tls")
            && has(&seen, server.id(), false, b"GET /kubetap-tls-probe")
            && has(&seen, server.id(), true, b"hello over tls"))
    {
        probes.poll(Duration::from_millis(200), |r| seen.push(r), |_| {});
    }
    let summary: Vec<String> = seen
        .iter()
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
        .collect();
    let request = seen
        .iter()
        .find(|r| r.pid == curl_pid && r.egress && r.data.starts_with(b"GET /kubetap-tls-probe"))
        .unwrap_or_else(|| panic!("curl's request not seen: {summary:#?}"));
    assert!(
        request.fd.is_some_and(|fd| fd >= 0),
        "no socket: {request:?}"
    );
    assert_eq!(request.total as usize, request.data.len());
    assert!(
        has(&seen, curl_pid, false, b"hello over tls"),
        "the answer curl read: {summary:#?}"
    );
    // The server's side, through the `_ex` functions.
    let read = seen
        .iter()
        .find(|r| {
            r.pid == server.id() && !r.egress && r.data.starts_with(b"GET /kubetap-tls-probe")
        })
        .unwrap_or_else(|| panic!("the request the server read: {summary:#?}"));
    assert!(read.fd.is_some_and(|fd| fd >= 0), "no socket: {read:?}");
    assert!(
        has(&seen, server.id(), true, b"hello over tls"),
        "the answer the server wrote: {summary:#?}"
    );
    let lost = probes.lost();
    assert_eq!(lost, Default::default(), "{lost:?}");
}

#[test]
fn a_file_without_tls_functions_is_refused_by_name() {
    if !require_tools("eBPF TLS test", true, &[]) {
        return;
    }
    let mut probes = TlsProbes::load().unwrap();
    let err = probes
        .attach(std::path::Path::new("/bin/true"))
        .unwrap_err();
    assert!(matches!(err, TlsError::NoFunctions(_)), "{err}");
    assert!(err.to_string().contains("/bin/true"), "{err}");
}

/// A TLS client in C with OpenSSL linked in (`libssl.a`, libc shared):
/// `client PORT REQUEST DELAY_S` waits, asks 127.0.0.1:PORT (no
/// verification) and prints the answer's first read.
const LINKED_CLIENT: &str = r#"
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) return 1;
    sleep(atoi(argv[3]));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(atoi(argv[1]));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) return 2;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (SSL_connect(ssl) != 1) return 3;
    if (SSL_write(ssl, argv[2], strlen(argv[2])) <= 0) return 4;
    char answer[4096];
    int n = SSL_read(ssl, answer, sizeof answer - 1);
    if (n <= 0) return 5;
    answer[n] = 0;
    fputs(answer, stdout);
    SSL_shutdown(ssl);
    return 0;
}
"#;

/// OpenSSL linked into an executable, as Node.js, Envoy or a program built
/// with `libssl.a` carry it: the process maps no libssl, so discovery finds
/// the functions in the executable and hooks them there, and the client's
/// request and the answer's head (its one read) arrive from its pid; the same program stripped
/// is listed, not hooked, with the reason.
#[test]
fn openssl_linked_into_an_executable_is_hooked_there_or_said_why_not() {
    use tap_worker::tls::discovery::Discovery;
    use tap_worker::tls::linked::{LinkedIn, linked_in};
    if !require_tools(
        "eBPF TLS test",
        true,
        &["gcc", "strip", "openssl", "python3"],
    ) {
        return;
    }
    let dir = TempDir::new("tls-linked");
    let source = dir.path("client.c");
    std::fs::write(&source, LINKED_CLIENT).unwrap();
    let full = dir.path("linked-client");
    let built = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&full)
        .arg(&source)
        .args(["-Wl,-Bstatic", "-lssl", "-lcrypto", "-Wl,-Bdynamic"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "gcc with libssl.a (libssl-dev): {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let stripped = dir.path("linked-client-stripped");
    assert!(
        Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&full)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(linked_in(&full).unwrap(), Some(LinkedIn::Hookable));
    assert_eq!(
        linked_in(&stripped).unwrap(),
        Some(LinkedIn::Stripped("OpenSSL"))
    );

    let port = free_port();
    let _server = https_server(&dir, port);
    let mut probes = TlsProbes::load().unwrap();
    let mut discovery = Discovery::new();
    discovery.scan(&mut probes);
    let mut seen: Vec<TlsRecord> = Vec::new();
    let step = |probes: &mut TlsProbes, discovery: &mut Discovery, seen: &mut Vec<TlsRecord>| {
        let mut events = Vec::new();
        probes.poll(
            Duration::from_millis(50),
            |r| seen.push(r),
            |e| events.push(e),
        );
        for e in events {
            discovery.event(e);
        }
        discovery.tick(probes);
    };
    let listed = |d: &Discovery, exe: &std::path::Path| {
        d.libraries()
            .into_iter()
            .find(|l| std::path::Path::new(&l.path) == exe)
    };
    // Started after the probes; it waits a second before it connects,
    // which is discovery's time to find and hook it.
    let request = "GET /linked-in HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let client = Process::spawn(
        Command::new(&full)
            .args([&port.to_string(), request, "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let has = |seen: &[TlsRecord], egress: bool, needle: &[u8]| {
        seen.iter().any(|r| {
            r.pid == client.id()
                && r.egress == egress
                && r.data.windows(needle.len()).any(|w| w == needle)
        })
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20)
        && !(has(&seen, true, b"GET /linked-in HTTP/1.1") && has(&seen, false, b"HTTP/1.1 200 OK"))
    {
        step(&mut probes, &mut discovery, &mut seen);
    }
    let lib = listed(&discovery, &full);
    assert!(
        has(&seen, true, b"GET /linked-in HTTP/1.1") && has(&seen, false, b"HTTP/1.1 200 OK"),
        "the linked-in client's plaintext: {lib:?}, {} records; listed: {:#?}",
        seen.len(),
        discovery.libraries()
    );
    let lib = lib.expect("the executable is listed");
    assert_eq!(lib.kind, "openssl (linked in)", "{lib:?}");
    assert!(lib.hooked, "{lib:?}");
    assert!(lib.functions.iter().any(|f| f == "SSL_write"), "{lib:?}");

    let _stripped_client = Process::spawn(
        Command::new(&stripped)
            .args([&port.to_string(), request, "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let started = Instant::now();
    while listed(&discovery, &stripped).is_none() && started.elapsed() < Duration::from_secs(20) {
        step(&mut probes, &mut discovery, &mut seen);
    }
    let lib = listed(&discovery, &stripped).expect("the stripped executable is listed");
    assert!(!lib.hooked, "{lib:?}");
    assert!(
        lib.reason.contains("statically linked OpenSSL") && lib.reason.contains("stripped"),
        "{lib:?}"
    );
}

/// The ring buffer left unread while curl downloads 32 MiB over TLS (some
/// 2,000 reads of 16 KiB; the ring holds 8 MiB): the losses are counted as
/// `ring_full`, and the kernel programs say so in the log through aya-log,
/// once per CPU, not once per loss.
#[test]
fn a_full_ring_is_counted_and_said_in_the_log_once() {
    use std::sync::Mutex;
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    struct Collect;
    impl log::Log for Collect {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            LINES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{} {}", record.level(), record.args()));
        }
        fn flush(&self) {}
    }
    if !require_tools("eBPF TLS test", true, &["openssl", "curl", "python3"]) {
        return;
    }
    log::set_logger(&Collect).expect("the only logger of this test binary");
    log::set_max_level(log::LevelFilter::Trace);
    let dir = TempDir::new("tls-ring-full");
    let port = free_port();
    let server = https_server(&dir, port);
    let mut probes = TlsProbes::load().unwrap();
    for lib in libraries_of(server.id())
        .iter()
        .chain(curls_libssl().iter())
    {
        probes.attach(lib).unwrap();
    }
    let got = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--http1.1",
        ])
        .arg(format!("https://127.0.0.1:{port}/big"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        (32u64 << 20).to_string()
    );
    probes.poll(Duration::ZERO, |_| {}, |_| {});
    let lost = probes.lost();
    assert!(lost.ring_full > 0, "{lost:?}");
    let lines = LINES.lock().unwrap().clone();
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("the ring buffer is full"))
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        !said.is_empty() && said.len() <= cpus,
        "{} losses, said {} times: {lines:#?}",
        lost.ring_full,
        said.len()
    );
    assert!(said[0].starts_with("WARN"), "{said:?}");
}

/// The kernel's verifier refusing a program, and an object that is not one:
/// each an error naming the cause (the worker then says so and captures
/// packets without TLS plaintext), never a panic. The refused program is
/// the real `tap_ssl_write` with its first instruction made an `exit`
/// that returns an unset register.
#[test]
fn a_program_the_verifier_refuses_is_reported_by_name() {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    if !require_tools("eBPF TLS test", true, &[]) {
        return;
    }
    let mut damaged = TlsProbes::embedded_object().to_vec();
    let at = {
        let elf = object::File::parse(&damaged[..]).expect("the embedded object is ELF");
        let symbol = elf
            .symbols()
            .find(|s| s.name() == Ok("tap_ssl_write"))
            .expect("tap_ssl_write in the object");
        let section = elf
            .section_by_index(symbol.section_index().expect("in a section"))
            .unwrap();
        let (start, _) = section.file_range().expect("its bytes are in the file");
        (start + symbol.address()) as usize
    };
    // BPF_JMP | BPF_EXIT, all registers and the immediate zero.
    damaged[at..at + 8].copy_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
    let err = TlsProbes::load_object(&damaged)
        .err()
        .expect("the verifier refuses the program");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(
            err,
            TlsError::Program {
                name: "tap_ssl_write",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("tap_ssl_write") && msg.contains("Verifier output: unreachable insn"),
        "{msg}"
    );

    // Cut short: not an object at all.
    let cut = &TlsProbes::embedded_object()[..100];
    let err = TlsProbes::load_object(cut).err().expect("refused");
    assert!(matches!(err, TlsError::Load(_)), "{err:?}");
    eprintln!("{err}");

    // Neither left anything behind: the real programs still load.
    TlsProbes::load().expect("the real programs load after the refusals");
}

/// A Python TLS client that asks once and keeps its connection open.
const CLIENT: &str = r#"
import socket, ssl, sys, time
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
tls = context.wrap_socket(raw)
tls.sendall(b"GET /held-open HTTP/1.1\r\nHost: localhost\r\n\r\n")
tls.recv(4096)
print("answered", flush=True)
time.sleep(30)
"#;

/// The connection behind each side's socket, read from /proc while both
/// processes hold it: the addresses as each sees them, and which is the
/// server.
#[test]
fn a_tls_calls_socket_resolves_to_its_connection() {
    if !require_tools("eBPF TLS test", true, &["openssl", "python3"]) {
        return;
    }
    let dir = TempDir::new("tls-sockets");
    let port = free_port();
    let server = https_server(&dir, port);
    let mut probes = TlsProbes::load().unwrap();
    for lib in libraries_of(server.id()) {
        probes.attach(&lib).unwrap();
    }
    let mut client = Process::spawn(
        Command::new("python3")
            .args(["-c", CLIENT, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.child().stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "answered");
    let mut seen: Vec<TlsRecord> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10)
        && !(seen.iter().any(|r| r.pid == client.id() && r.egress)
            && seen.iter().any(|r| r.pid == server.id() && !r.egress))
    {
        probes.poll(Duration::from_millis(200), |r| seen.push(r), |_| {});
    }
    let side = |pid: u32, egress: bool| {
        let r = seen
            .iter()
            .find(|r| r.pid == pid && r.egress == egress && r.fd.is_some())
            .unwrap_or_else(|| panic!("no call of {pid} with a socket: {seen:?}"));
        let info = socket_of(pid, r.fd.unwrap()).unwrap_or_else(|| panic!("socket of {r:?}"));
        // The kernel read the same addresses during the call.
        assert_eq!(r.addrs, Some((info.local, info.remote)), "{r:?}");
        info
    };
    let c = side(client.id(), true);
    let s = side(server.id(), false);
    let server_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!((c.remote, c.server_side), (server_addr, false), "{c:?}");
    assert_eq!((s.local, s.server_side), (server_addr, true), "{s:?}");
    assert_eq!(s.remote, c.local, "both ends name the same connection");
}

/// The plaintext becomes entries, as captured packets do: the held-open
/// client's exchange, seen by both of its ends, is one HTTP entry marked
/// `tls`, from the server's end (the client read only part of the answer),
/// with the connection's real addresses.
#[test]
fn tls_plaintext_becomes_http_entries_marked_tls() {
    if !require_tools("eBPF TLS test", true, &["openssl", "python3"]) {
        return;
    }
    let dir = TempDir::new("tls-entries");
    let port = free_port();
    let server = https_server(&dir, port);
    let mut probes = TlsProbes::load().unwrap();
    for lib in libraries_of(server.id()) {
        probes.attach(&lib).unwrap();
    }
    let mut streams = Streams::new(std::sync::Arc::new(DissectConfig::default()));
    let mut out: Vec<Emit> = Vec::new();
    let mut client = Process::spawn(
        Command::new("python3")
            .args(["-c", CLIENT, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let mut stdout = std::io::BufReader::new(client.child().stdout.take().unwrap());
    // The records are turned into flows as they come, while both
    // processes hold the connection (its socket is resolved from /proc).
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        line
    });
    let started = Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        probes.poll(
            Duration::from_millis(100),
            |r| streams.record(&r, &mut out),
            |_| {},
        );
    }
    assert_eq!(reader.join().unwrap().trim(), "answered");
    probes.poll(
        Duration::from_millis(300),
        |r| streams.record(&r, &mut out),
        |_| {},
    );
    streams.finish(u64::MAX / 2, &mut out);
    let entries: Vec<_> = out
        .into_iter()
        .filter_map(|e| match e {
            Emit::Entry(e) => Some(*e),
            _ => None,
        })
        .filter(|e| e.path() == Some("/held-open"))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one for both ends: {entries:?} {:?}",
        streams.stats()
    );
    assert_eq!(streams.stats().mirrored, 1);
    let e = &entries[0];
    assert!(e.tls, "{e:?}");
    assert_eq!((e.method(), e.status()), (Some("GET"), Some(200)), "{e:?}");
    assert!(e.flags.is_empty(), "the server's whole view: {e:?}");
    let dst = e.dst.as_ref().unwrap();
    assert_eq!((dst.ip.as_str(), dst.port), ("127.0.0.1", u32::from(port)));
}
