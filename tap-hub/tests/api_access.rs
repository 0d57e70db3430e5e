//! Who may use a real `tap-hub`'s API (`tap_hub::access`), over real sockets:
//! the token a hub makes at start and prints in the UI's URL, one from
//! `--token-file`, requests without it or with a wrong one refused and
//! logged (never with the token), the probes open, and the live stream's
//! WebSocket: its token as a subprotocol (the browser's way) or a header,
//! refused from another origin.

// The support module serves hub_workers.rs too; this file needs part of it.
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::process::{Hub, Process};
use testkit::http::{self, TOKEN};
use testkit::{TempDir, assert_eventually};

/// A `tap-hub` with its API on `listen`, started with `configure` (no
/// `KUBETAP_TOKEN` unless it sets one): its API address and every stderr
/// line up to the UI's.
fn start_on(
    listen: &str,
    configure: impl FnOnce(&mut Command),
) -> (Process, SocketAddr, Vec<String>) {
    let (tx, rx) = mpsc::channel();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tap-hub"));
    command
        .env_remove("KUBETAP_TOKEN")
        .args(["--grpc", "127.0.0.1:0", "--listen", listen]);
    configure(&mut command);
    let process = Process::spawn("tap-hub", &mut command, Some(tx));
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("tap-hub printed the UI's address within 30 s");
        lines.push(line);
        let last = lines.last().unwrap();
        if let Some(rest) = last.strip_prefix("tap-hub: the UI: http://") {
            let api = rest.split('/').next().unwrap().parse().unwrap();
            return (process, api, lines);
        }
    }
}

fn start(configure: impl FnOnce(&mut Command)) -> (Process, SocketAddr, Vec<String>) {
    start_on("127.0.0.1:0", configure)
}

fn status(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    http::try_request_as(addr, "GET", path, None, token, &[])
        .unwrap()
        .status
}

#[test]
fn a_generated_token_is_printed_in_the_uis_url_and_nowhere_else_needed() {
    let (hub, api, lines) = start(|_| {});
    let ui = lines.last().unwrap();
    let token = ui
        .split("?token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token in {ui:?}"));
    assert_eq!(token.len(), 64, "{ui}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{ui}");
    assert_eq!(status(api, "/api/workers", Some(token)), 200);
    assert_eq!(status(api, "/api/workers", Some(TOKEN)), 401);
    assert_eq!(status(api, "/api/workers", None), 401);
    // The URL printed opens the page (its files need no token).
    let page =
        http::try_request_as(api, "GET", &format!("/?token={token}"), None, None, &[]).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"), "{}", page.body);
    drop(hub);
}

#[test]
fn a_token_file_is_used_and_not_printed() {
    let dir = TempDir::new("token-file");
    let file = dir.path("token");
    std::fs::write(&file, "from-a-file-0123456789abcdef\n").unwrap();
    let (hub, api, lines) = start(|c| {
        c.arg("--token-file").arg(&file);
    });
    assert_eq!(
        status(api, "/api/entries", Some("from-a-file-0123456789abcdef")),
        200
    );
    assert_eq!(status(api, "/api/entries", None), 401);
    assert!(
        !hub.log().contains("from-a-file-0123456789abcdef"),
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().contains("<the token in "),
        "{lines:?}"
    );
}

#[test]
fn a_short_token_is_refused_at_start_with_the_reason() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tap-hub"));
    command.env("KUBETAP_TOKEN", "secret").args([
        "--grpc",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut hub = Process::spawn("tap-hub", &mut command, None);
    let exit = hub.wait_for(Duration::from_secs(30));
    assert!(!exit.success());
    assert!(
        hub.log().contains("at least 16") && hub.log().contains("openssl rand"),
        "{}",
        hub.log()
    );
}

#[test]
fn listening_beyond_loopback_warns() {
    let (hub, _, lines) = start_on("0.0.0.0:0", |_| {});
    // The warning follows the UI's line.
    assert_eventually!(
        Duration::from_secs(10),
        hub.log().contains("warning: the API listens on 0.0.0.0:"),
        "no warning in {lines:?} / {}",
        hub.log()
    );
    drop(hub);
}

#[test]
fn refusals_are_answered_with_what_to_do_and_logged_without_the_token() {
    let hub = Hub::start(&[]);
    let without = http::try_request_as(hub.api, "GET", "/api/entries", None, None, &[]).unwrap();
    assert_eq!(without.status, 401);
    assert_eq!(
        without.header("www-authenticate"),
        Some(r#"Bearer realm="kubetap""#)
    );
    let error = without.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("Authorization: Bearer <token>") && error.contains("?token="),
        "{error}"
    );
    let wrong = "wrong-token-0123456789abcdef";
    assert_eq!(status(hub.api, "/api/workers", Some(wrong)), 401);
    assert_eq!(status(hub.api, "/metrics", None), 401);
    // Open without it: the probes.
    assert_eq!(status(hub.api, "/healthz", None), 200);
    assert_eq!(status(hub.api, "/readyz", None), 200);
    // With it: the API and the metrics, which count the refusals.
    let metrics = http::get(hub.api, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains(r#"kubetap_hub_api_refused_total{reason="missing_token"} 2"#),
        "{}",
        metrics.body
    );
    assert_eq!(
        hub.workers()["hub"]["api_refused"]["wrong_token"],
        serde_json::json!(1)
    );
    assert_eventually!(
        Duration::from_secs(10),
        hub.process.log().matches("refused an API request").count() >= 3,
        "{}",
        hub.process.log()
    );
    let log = hub.process.log();
    let line = log
        .lines()
        .find(|l| l.contains("refused an API request") && l.contains("/api/workers"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("WARN") && line.contains("wrong_token") && line.contains("127.0.0.1:"),
        "{line}"
    );
    assert!(!log.contains(wrong) && !log.contains(TOKEN), "{log}");
}

#[test]
fn a_scanner_cannot_flood_the_log() {
    let hub = Hub::start(&[]);
    for i in 0..100 {
        assert_eq!(status(hub.api, &format!("/api/x{i}"), None), 401);
    }
    assert_eq!(
        hub.workers()["hub"]["api_refused"]["missing_token"],
        serde_json::json!(100)
    );
    let logged = || hub.process.log().matches("refused an API request").count();
    let burst = tap_hub::access::LOG_BURST as usize;
    assert_eventually!(
        Duration::from_secs(10),
        logged() == burst,
        "{}",
        hub.process.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(logged(), burst, "{}", hub.process.log());
}

/// A WebSocket handshake for the live stream with `headers`; the answer's
/// head (status line and headers), once it has come.
fn handshake(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "GET /api/stream?format=rows HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the hub closed before answering the handshake");
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    String::from_utf8_lossy(&got[..end]).to_lowercase()
}

#[test]
fn the_live_stream_takes_the_token_as_a_subprotocol_from_its_own_origin_only() {
    let hub = Hub::start(&[]);
    let own = format!("http://{}", hub.api);
    let offer = format!("kubetap.v1, kubetap.bearer.{TOKEN}");
    // The browser's way: the page's own origin, the token as a subprotocol;
    // the hub selects kubetap.v1 and never echoes the token.
    let answer = handshake(
        hub.api,
        &[("Origin", &own), ("Sec-WebSocket-Protocol", &offer)],
    );
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    assert!(
        answer.contains("sec-websocket-protocol: kubetap.v1"),
        "{answer}"
    );
    assert!(!answer.contains(&TOKEN.to_lowercase()), "{answer}");
    // A client that is no browser: the header, no origin.
    let bearer = format!("Bearer {TOKEN}");
    let answer = handshake(hub.api, &[("Authorization", &bearer)]);
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    // No token, a wrong one, or one in the query: refused.
    let answer = handshake(hub.api, &[("Origin", &own)]);
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    let answer = handshake(
        hub.api,
        &[
            ("Origin", &own),
            (
                "Sec-WebSocket-Protocol",
                "kubetap.v1, kubetap.bearer.wrong-0123456789abcdef",
            ),
        ],
    );
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    // Another site's page, token and all: refused and logged.
    let answer = handshake(
        hub.api,
        &[
            ("Origin", "http://evil.example"),
            ("Sec-WebSocket-Protocol", &offer),
        ],
    );
    assert!(answer.starts_with("http/1.1 403"), "{answer}");
    assert!(!answer.contains("access-control-allow-origin"), "{answer}");
    assert_eventually!(
        Duration::from_secs(10),
        hub.process
            .log()
            .lines()
            .any(|l| l.contains("foreign_origin") && l.contains("evil.example")),
        "{}",
        hub.process.log()
    );
    assert_eq!(
        hub.workers()["hub"]["api_refused"]["foreign_origin"],
        serde_json::json!(1)
    );
}
