//! `kubetap read` end to end on broken and hostile captures: the real binary,
//! its stdout, stderr and exit code, as a user at a terminal or a script sees
//! them.

use pcap_file::Endianness;
use pcap_file::pcap::PcapHeader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testkit::conversation::{
    Conversation, Link, Peer, get, ok, pcap, pcap_with_header, two_requests,
};

fn kubetap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubetap"))
}

/// A file under cargo's per-target scratch directory, named for its test.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).expect("write the capture");
    path
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The (path, status) of each JSON line on stdout; status is None without a response.
fn json_entries(stdout: &str) -> Vec<(String, Option<u64>, Vec<String>)> {
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON entry per line");
            let path = v["request"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let status = v["response"]["status"].as_u64();
            let flags = v["flags"]
                .as_array()
                .map(|fs| {
                    fs.iter()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (path, status, flags)
        })
        .collect()
}

/// Runs the binary with its address space limited to 1 GiB, so that any
/// attempt to allocate what a length field claims (2 GiB) fails loudly.
fn kubetap_in_1_gib(args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$@\"")
        .arg("kubetap")
        .arg(env!("CARGO_BIN_EXE_kubetap"))
        .args(args)
        .output()
        .expect("run bash")
}

/// A capture cut inside its last record (the process writing it was
/// killed): every entry before the cut, one warning naming the file and the
/// offset, and success, since everything that was there was read.
#[test]
fn a_capture_cut_inside_its_last_record_prints_its_entries_a_warning_and_exits_0() {
    let frames = two_requests();
    let whole = pcap(&frames);
    let last_record = whole.len() - 16 - frames.last().expect("frames").data.len();
    let path = scratch("truncated.pcap", &whole[..last_record + 30]);

    let out = kubetap()
        .args(["read", "--json"])
        .arg(&path)
        .output()
        .expect("run kubetap");

    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr_of(&out));
    assert_eq!(
        json_entries(&stdout_of(&out)),
        vec![
            ("/first".to_string(), Some(200), vec![]),
            ("/second".to_string(), None, vec!["no_response".to_string()]),
        ]
    );
    let stderr = stderr_of(&out);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kubetap: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "stderr: {stderr}");
    assert!(
        warnings[0].contains(&path.display().to_string())
            && warnings[0].contains(&format!("byte {last_record}"))
            && warnings[0].contains("truncated")
            && warnings[0].contains(&format!(
                "the {} packets before it were read",
                frames.len() - 1
            )),
        "warning line: {}",
        warnings[0]
    );
    let errors = stderr
        .lines()
        .filter(|l| l.contains("cannot read capture") && !l.contains("warning:"));
    assert_eq!(errors.count(), 0, "{stderr}");
}

/// Cut before its first record, a capture has nothing to read: an error
/// naming the offset, and exit 1.
#[test]
fn a_capture_cut_before_its_first_record_is_an_error_and_exit_1() {
    let whole = pcap(&two_requests());
    for cut in [10, 24 + 8] {
        let path = scratch(&format!("cut-{cut}.pcap"), &whole[..cut]);
        let out = kubetap()
            .args(["read", "--json"])
            .arg(&path)
            .output()
            .expect("run kubetap");
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "cut at {cut}: {stderr}");
        assert!(stdout_of(&out).is_empty(), "cut at {cut}");
        assert!(
            stderr.contains("cannot read capture") && stderr.contains("truncated"),
            "cut at {cut}: {stderr}"
        );
        assert!(!stderr.contains("warning"), "cut at {cut}: {stderr}");
    }
}

#[test]
fn missing_file_is_one_clear_error_and_exit_1() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-capture.pcap");
    let out = kubetap()
        .arg("read")
        .arg(&path)
        .output()
        .expect("run kubetap");

    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "stdout: {}", stdout_of(&out));
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("No such file"),
        "stderr: {stderr}"
    );
    assert_eq!(
        stderr.matches("No such file").count(),
        1,
        "the cause is printed more than once: {stderr}"
    );
}

#[test]
fn file_with_a_wrong_magic_is_refused_with_exit_1() {
    let mut bytes = pcap(&two_requests());
    bytes[..4].copy_from_slice(b"GIF8");
    let path = scratch("wrong-magic.pcap", &bytes);

    let out = kubetap()
        .arg("read")
        .arg(&path)
        .output()
        .expect("run kubetap");

    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "stdout: {}", stdout_of(&out));
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string())
            && stderr.contains("not a pcap or pcapng file")
            && stderr.contains("47494638"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_2_gib_snaplen_is_read_in_bounded_memory() {
    let bytes = pcap_with_header(
        PcapHeader {
            snaplen: 0x8000_0000,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        },
        &two_requests(),
    );
    let path = scratch("huge-snaplen.pcap", &bytes);

    let out = kubetap_in_1_gib(&["read", "--json", &path.display().to_string()]);

    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr_of(&out));
    assert_eq!(
        json_entries(&stdout_of(&out)),
        vec![
            ("/first".to_string(), Some(200), vec![]),
            ("/second".to_string(), Some(200), vec![]),
        ]
    );
}

#[test]
fn a_record_claiming_2_gib_fails_at_its_offset_in_bounded_memory() {
    let mut bytes = pcap(&two_requests());
    let bad_at = bytes.len();
    let mut record = [0u8; 16];
    record[8..12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    record[12..16].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    bytes.extend_from_slice(&record);
    bytes.extend_from_slice(&[0xab; 64]);
    let path = scratch("liar.pcap", &bytes);

    let out = kubetap_in_1_gib(&["read", "--json", &path.display().to_string()]);

    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr_of(&out));
    assert_eq!(json_entries(&stdout_of(&out)).len(), 2);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains(&format!("byte {bad_at}")),
        "stderr: {stderr}"
    );
}

#[test]
fn table_shows_control_characters_in_a_path_as_question_marks() {
    // U+009B is CSI for a terminal that honours 8-bit controls; httparse accepts it as UTF-8.
    let mut c = Conversation::open();
    c.exchange(&get("/caf\u{9b}31mred"), &ok("fine"))
        .close(Peer::Client);
    let path = scratch("c1-path.pcap", &pcap(&c.frames(Link::Ethernet)));

    let out = kubetap()
        .arg("read")
        .arg(&path)
        .output()
        .expect("run kubetap");

    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr_of(&out));
    let stdout = stdout_of(&out);
    assert!(stdout.contains("/caf?31mred"), "stdout: {stdout}");
    assert!(
        !stdout.chars().any(|ch| ch.is_control() && ch != '\n'),
        "control characters reached the terminal: {stdout:?}"
    );
}

/// `read --serve` without `KUBETAP_TOKEN`: its hub makes a token, prints it
/// in the UI's URL (on 127.0.0.1), wants it on the API, and says on stderr
/// whom it refused (never with the token).
#[test]
fn read_serve_prints_the_uis_url_with_a_new_token_and_its_api_wants_it() {
    use std::io::{BufRead as _, BufReader};
    use std::time::Duration;
    let file = scratch("serve-token.pcap", &pcap(&two_requests()));
    let port = testkit::free_port();
    let mut child = kubetap()
        .env_remove("KUBETAP_TOKEN")
        .env_remove("KUBETAP_LOG")
        .args(["read", "--serve", "--port", &port.to_string()])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kubetap read --serve");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("kubetap read --serve printed no more")
    };
    let loaded = loop {
        let line = next();
        if line.contains("all entries loaded") {
            break line;
        }
    };
    let prefix = format!("serving at http://127.0.0.1:{port}/?token=");
    let token = loaded
        .split_once(&prefix)
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no URL with a token in {loaded:?}"))
        .to_string();
    assert_eq!(token.len(), 64, "{loaded}");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let call = |token: Option<&str>| {
        testkit::http::try_request_as(addr, "GET", "/api/entries", None, token, &[]).unwrap()
    };
    assert_eq!(call(None).status, 401);
    let with = call(Some(&token));
    assert_eq!(with.status, 200, "{}", with.body);
    assert_eq!(with.json()["entries"].as_array().unwrap().len(), 2);
    let refused = loop {
        let line = next();
        if line.contains("refused an API request") {
            break line;
        }
    };
    assert!(refused.contains("missing_token"), "{refused}");
    assert!(!refused.contains(&token), "{refused}");
    let _ = child.kill();
    let _ = child.wait();
}
