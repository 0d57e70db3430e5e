//! Redaction end to end without a cluster: a capture with secrets in the
//! places HTTP carries them — headers, cookies, the query string, a form, a
//! JSON body at depth, a value split between two packets, a gzip-encoded
//! response — read by `kubetap read` and served by `kubetap read --serve`.
//! No secret is in any printed entry, API answer or default PCAP export;
//! tshark still dissects the export, whose comments say what was
//! overwritten; `--raw-pcap` exports the packets as captured.

mod peers;

use peers::serve::{encode, get, spawn_piped, wait_line};
use peers::{TempDir, free_port, require, run};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::conversation::{Conversation, Link, Peer as End, pcap};

const SECRETS: &[&str] = &[
    "bearer-4f9c2d7e1a",
    "cookie-8d1e5b2a7c",
    "setcookie-1b7e9a3d5f",
    "query-pw-5c8e2f1a9d",
    "form-pw-2a9d7c4e1b",
    "json-pw-7e3a1c9d5f",
    "split-pw-3d8b1f6a2c",
    "gzip-token-9f2c7a1e4d",
];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Three connections: secrets in headers, query, cookies and a JSON body;
/// a form whose secret is cut between two segments; a gzip JSON response.
fn capture(dir: &TempDir) -> PathBuf {
    let mut frames = Vec::new();
    let json = format!(
        r#"{{"a":{{"b":[1,{{"password":"{}"}}]}},"item":"visible-item"}}"#,
        SECRETS[5]
    );
    let mut c = Conversation::open();
    c.exchange(
        format!(
            "POST /login?user=ann&password={}&page=2 HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {}\r\nCookie: session={}\r\nX-Request-Id: visible-req-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            SECRETS[3],
            SECRETS[0],
            SECRETS[1],
            json.len(),
        )
        .as_bytes(),
        format!(
            "HTTP/1.1 200 OK\r\nSet-Cookie: id={}; Path=/; HttpOnly\r\nContent-Length: 2\r\n\r\nok",
            SECRETS[2]
        )
        .as_bytes(),
    );
    c.close(End::Client);
    frames.extend(c.frames(Link::Ethernet));

    let form = format!(
        "nick=visible-nick&password={}&pass={}",
        SECRETS[4], SECRETS[6]
    );
    let request = format!(
        "POST /form HTTP/1.1\r\nHost: shop\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    // The secret is cut in the middle by the segment boundary.
    let cut = request.find(SECRETS[6]).unwrap() + 7;
    let mut c = Conversation::open_with_isn(7_000, 90_000);
    c.send_split(End::Client, request.as_bytes(), &[cut]);
    c.send(End::Server, b"HTTP/1.1 204 No Content\r\n\r\n");
    c.close(End::Client);
    later(&mut c, 1);
    frames.extend(c.frames(Link::Ethernet));

    let body = gzip(format!(r#"{{"token":"{}","visible":"visible-gz"}}"#, SECRETS[7]).as_bytes());
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let mut c = Conversation::open_with_isn(11_000, 130_000);
    c.exchange(b"GET /gz HTTP/1.1\r\nHost: shop\r\n\r\n", &response);
    c.close(End::Client);
    later(&mut c, 2);
    frames.extend(c.frames(Link::Ethernet));

    let file = dir.path("secrets.pcap");
    std::fs::write(&file, pcap(&frames)).unwrap();
    file
}

/// Conversations all start at the same time on the same ports: the `n`th
/// comes `n` seconds later, a new connection on the closed one's ports.
fn later(c: &mut Conversation, n: u64) {
    for s in &mut c.segments {
        s.ts_ns += n * 1_000_000_000;
    }
}

fn leaks(what: &str, bytes: &[u8]) -> Vec<String> {
    SECRETS
        .iter()
        .filter(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        .map(|s| format!("{s} in {what}"))
        .collect()
}

#[test]
fn no_secret_in_entries_api_answers_or_the_default_pcap_export() {
    if !require(&["tshark"]) {
        return;
    }
    let dir = TempDir::new("redaction");
    let file = capture(&dir);
    // The capture has them as the wire did: the split one in two halves,
    // the gzip one as it is (deflate stores so short a body uncompressed,
    // and the search for the decoded value would not know it).
    let captured = leaks("capture", &std::fs::read(&file).unwrap());
    assert_eq!(captured.len(), SECRETS.len() - 1, "{captured:?}");

    // `kubetap read`: JSON lines.
    let json = run(Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["read", "--json"])
        .arg(&file));
    let mut found = leaks("kubetap read --json", &json);
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let login = &entries[0];
    assert_eq!(login["request"]["method"], "POST");
    assert_eq!(login["response"]["status"], 200);
    let text = login.to_string();
    for visible in [
        "visible-req-1",
        "visible-item",
        "/login?user=[REDACTED]&password=[REDACTED]&page=2",
    ] {
        assert!(text.contains(visible), "{visible} in {text}");
    }
    let redacted: Vec<&str> = login["redacted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "request.headers.authorization",
        "request.headers.cookie.session",
        "request.query.password",
        "request.body.a.b[1].password",
        "response.headers.set-cookie.id",
    ] {
        assert!(redacted.contains(&field), "{field} in {redacted:?}");
    }
    // --no-redaction (kubetap read only) prints the file's values.
    let plain = run(Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["read", "--json", "--no-redaction"])
        .arg(&file));
    assert_eq!(leaks("--no-redaction", &plain).len(), SECRETS.len());
    assert!(entries[1].to_string().contains("visible-nick"));
    assert!(entries[2].to_string().contains("visible-gz"));

    // `kubetap read --serve`: every API answer and the PCAP export.
    let port = free_port();
    let mut serve = spawn_piped(
        Command::new(env!("CARGO_BIN_EXE_kubetap"))
            .args(["read", "--serve", "--port", &port.to_string()])
            .arg(&file),
    );
    wait_line(&mut serve, "all entries loaded");
    let (status, body) = get(port, "/api/entries?limit=100");
    assert_eq!(status, 200);
    found.extend(leaks("/api/entries", &body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for e in v["entries"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let (_, detail) = get(port, &format!("/api/entries/{}", encode(id)));
        found.extend(leaks(&format!("/api/entries/{id}"), &detail));
    }
    for path in [
        "/api/rows?limit=100",
        "/api/servicemap",
        "/api/workers",
        "/metrics",
    ] {
        let (_, body) = get(port, path);
        found.extend(leaks(path, &body));
    }
    let (status, export) = get(port, &format!("/api/pcap?filter={}", encode("http")));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&export));
    found.extend(leaks("/api/pcap", &export));
    found.extend(
        halves(&export)
            .into_iter()
            .map(|h| format!("{h} in /api/pcap")),
    );
    assert!(found.is_empty(), "secrets left the worker: {found:#?}");

    // tshark still reads the requests, and the comments say what happened.
    let exported = dir.path("export.pcapng");
    std::fs::write(&exported, &export).unwrap();
    let requests = tshark(
        &exported,
        "http.request",
        &["http.request.method", "http.request.uri"],
    );
    assert_eq!(
        requests,
        [
            "POST\t/login?user=***&password=*******************&page=2",
            "POST\t/form",
            "GET\t/gz"
        ],
        "requests as tshark reads the export"
    );
    let comments = tshark(&exported, "frame.comment", &["frame.comment"]);
    assert!(
        comments
            .iter()
            .any(|c| c.contains("redacted values overwritten")),
        "{comments:?}"
    );
    assert!(
        comments.iter().any(|c| c.contains("payload overwritten")),
        "the gzip response is blanked whole: {comments:?}"
    );
    drop(serve);

    // --raw-pcap: the packets as captured.
    let port = free_port();
    let mut raw = spawn_piped(
        Command::new(env!("CARGO_BIN_EXE_kubetap"))
            .args(["read", "--serve", "--raw-pcap", "--port", &port.to_string()])
            .arg(&file),
    );
    wait_line(&mut raw, "all entries loaded");
    let (status, export) = get(port, &format!("/api/pcap?filter={}", encode("http")));
    assert_eq!(status, 200);
    assert_eq!(leaks("raw export", &export).len(), SECRETS.len() - 1);
    assert_eq!(
        halves(&export).len(),
        2,
        "the split secret's halves, as captured"
    );
}

/// The halves of the secret cut between two segments, where they are found.
fn halves(bytes: &[u8]) -> Vec<&'static str> {
    let (a, b) = SECRETS[6].split_at(7);
    [a, b]
        .into_iter()
        .filter(|h| bytes.windows(h.len()).any(|w| w == h.as_bytes()))
        .collect()
}

/// `tshark -Y filter -T fields -e …`, one line per frame.
fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    String::from_utf8(run(&mut cmd))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}
